from banking_app.main import main

main()
