"""Thin gRPC servicers over the plain Python objects of the control plane."""
