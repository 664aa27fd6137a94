"""The SCP side of an Application Entity: the server entity and its dispatch, storage, hooks."""
