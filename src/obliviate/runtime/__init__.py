"""What every run needs underneath the commands: files (atomic writes), the run lifecycle (output folder,
run.json), this process (identity, signals), with several processes who writes (``dist``), and progress
lines (``progress``)."""
