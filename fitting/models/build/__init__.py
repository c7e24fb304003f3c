"""Build tools for the embedded open model (MakeHuman data, landmark placement); a build step,
never imported by the library's ``load_model`` path."""
