"""Apache Beam pipelines of expnet-data: ``generate`` (read, label, write shards) and ``synth``
(render synthetic faces); Beam wiring only."""
