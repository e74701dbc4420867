"""A run directory: the store (search.db, the single source of truth), its lock, the checkpoints,
the manifest and the verified winner (`rundir`), and the HTML report."""
