"""Validate, summarise and report on a generated dataset (``expnet inspect``); reads the
files through :mod:`schemas`, builds no pipeline."""
