"""Reference implementations, one package per backend; each exposes `make_model(spec)`."""
