from dcmnet_cli.cli.main import main

main()
