"""Operations: the ``banking-app`` command line, the operator commands and their HTTP
client, the audit (``replay --verify``), the read-model rebuild, topic admin, and the
local brokers and workers that ``dev``, the tests and the benchmark run.
"""
