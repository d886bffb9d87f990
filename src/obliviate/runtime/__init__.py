"""Run machinery below the commands: which process this is (``dist``), progress lines (``progress``)."""
