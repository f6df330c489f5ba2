"""WIP checkpoints in git: the job's work is committed to ``aq/wip/<id>`` on every exit path."""
