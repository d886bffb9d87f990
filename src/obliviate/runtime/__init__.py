"""What every run needs underneath the commands: files (atomic writes), the run lifecycle (output folder,
run.json), this process (identity, signals) and, with several processes, who writes (``dist``)."""
