"""What a study hands on: Table S1, exported parameter files, the seed comparison."""
