"""One module per command; :data:`COMMANDS` names them (the group imports a command's module only when it runs)."""

COMMANDS: dict[str, tuple[str, str]] = {
    "echo": ("dcmnet_cli.cli.commands.echo", "Check that a DICOM node answers (C-ECHO)."),
    "find": ("dcmnet_cli.cli.commands.find", "Query a node for patients, studies, series, images or worklist items (C-FIND)."),
    "get": ("dcmnet_cli.cli.commands.get", "Retrieve objects from a Q/R SCP over one association (C-GET)."),
    "listen": ("dcmnet_cli.cli.commands.listen", "Run a DICOM node: Verification and Storage SCP."),
    "nodes": ("dcmnet_cli.cli.commands.nodes", "List the nodes of the config file; --check echoes them all."),
    "completion": ("dcmnet_cli.cli.commands.completion", "Print the shell completion script (bash, zsh or fish)."),
    "probe": ("dcmnet_cli.cli.commands.probe", "See which SOP classes, transfer syntaxes and roles a node accepts."),
    "move": ("dcmnet_cli.cli.commands.move", "Move objects from a Q/R SCP to an AE, or receive them here (C-MOVE)."),
    "store": ("dcmnet_cli.cli.commands.store", "Send DICOM files to a Storage SCP (C-STORE)."),
    "users": ("dcmnet_cli.cli.commands.users", "Add or remove a user in the users file of listen --users."),
}
