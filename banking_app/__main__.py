from banking_app.operations.launcher import main

main()
