"""Running one plan as many cluster jobs: splitting it into shards (:mod:`.shard`) and writing the Slurm
job arrays that run them (:mod:`.slurm`)."""
