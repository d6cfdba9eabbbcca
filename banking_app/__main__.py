from banking_app.cli import main

main()
