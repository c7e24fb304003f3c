"""The ``expnet`` console command: one dispatcher that imports each job's ``main`` when it runs."""
