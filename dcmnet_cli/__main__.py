from dcmnet_cli.cli.main import entry

entry()
