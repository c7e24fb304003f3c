"""Apache Beam pipelines of expnet-data: reading, labelling, writing; the ``expnet`` CLI."""
