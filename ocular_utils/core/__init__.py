"""What every stage uses: atomic files, the execution environment, project paths, typed settings."""
