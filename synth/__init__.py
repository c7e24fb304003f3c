"""Synthetic faces with exactly known labels: a mesh renderer, the face synthesiser behind
``expnet synth``, and a small seeded toy model for the fitter's round-trip tests."""
