"""The Faust/Kafka runtime the three services share: the app, settings, topics, the wire
codec, and the plumbing that makes at-least-once processing safe and fast.

Several modules replace or reach into faust-streaming, mode-streaming and aiokafka
internals; their versions are pinned in ``pyproject.toml`` for that reason. Upgrading
any of them means re-reading, against the new upstream code, each module below (its
docstring names the upstream code it replaces or reads):

- ``consumer``: Faust's fetch loop (``faust/transport/consumer.py``,
  ``Consumer._drain_messages``), its read-offset and gap bookkeeping, and aiokafka's
  subscription state (``_subscription``) for a partition's position.
- ``transport``: Faust's aiokafka driver (``faust/transport/drivers/aiokafka.py``): the
  consumer thread's fetch wait and end offsets.
- ``offsets``: end offsets for table recovery, probing records with aiokafka.
- ``produce``: Faust's ``Producer.send`` path, appending to aiokafka's batches
  (``aiokafka/producer/message_accumulator.py``, ``create_batch``/``send_batch``), and
  working around the C batch builder's -1 first timestamp
  (``aiokafka/record/_crecords/default_records.pyx``).
- ``streams``: Faust's ``Stream.take_events`` (``faust/streams.py``), as quiet takes.
- ``tables``: Faust's per-write table path (``faust/tables/base.py``,
  ``faust/stores/rocksdb.py``: ``_dbs``, ``_db_for_partition``, ``offset_key``).
- ``topics``: ``faust.Schema.compile`` for raw-bytes topics.
- ``declare``: what ``Topic.declare`` with the driver's ``_topic_config`` would create.
- ``restore``: Faust's table recovery (``faust/tables/recovery.py``,
  ``Recovery._slurp_changelogs``) for most of the records, writing as
  ``Store.apply_changelog_batch`` does, with ``offset_key`` and ``persisted_offset``;
  it asks aiokafka's client for metadata (``AIOKafkaClient.force_metadata_update``).
- ``rocksdb_memory``: ``RocksDBOptions.as_options`` (``faust/stores/rocksdb.py``), and
  ``Store.rocksdb_options``, when ``BANKING_ROCKSDB_MEMORY_MB`` is set.
- ``consumer.consumed_to`` (for ``/health``): ``Consumer._committed_offset``.
- ``faust_app``: ``App.on_init_dependencies`` (the Monitor sensor) and the transport.
- ``assignor``: Faust's ``PartitionAssignor`` (``faust/assignor/partition_assignor.py``),
  its ``_table_manager`` as the leader and each member read it; ``roles`` reads its
  ``changelog_distribution``.

``upstream`` lists the private names ``consumer``, ``transport``, ``faust_app``,
``streams``, ``tables``, ``restore``, ``rocksdb_memory``, ``produce`` and ``assignor``
rely on, and
stops the worker with the missing name and the pinned version when an upgrade renamed
one.
"""
