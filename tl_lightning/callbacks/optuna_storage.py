"""Where an Optuna study lives, opened the same way by the sweeper and by each trial's job (no Lightning here:
Hydra imports the sweeper plugin, and with it this module, at every start)."""


def open_storage(storage: str):
    """An Optuna storage from a URL (sqlite:///..., postgresql://...) or a journal file path (``*.journal``), as the
    sweeper opens it."""
    if storage.endswith(".journal"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(storage))
    return storage
