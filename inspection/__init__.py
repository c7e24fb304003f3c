"""Validate, summarise and report on a generated dataset (``expnet inspect``); reads the
files through :mod:`schemas.reader`, builds no pipeline and needs no Beam."""
