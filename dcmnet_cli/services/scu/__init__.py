"""The SCU side of an Application Entity: echo, store, find, move/get, and the association helper they share."""
