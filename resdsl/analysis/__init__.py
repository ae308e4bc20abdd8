"""Static and dynamic analyses of a network's IR.

cost      MACs by op class and counting convention, memory, receptive fields (static)
paths     exact input->output path counts and path-length histograms (static)
lesion    which residual branches can be deleted, and what deleting them does
variance  activation / gradient variance at initialisation (runs the module)
sizes     which input sizes the network runs at, and runs at without rounding (exact)
symbolic  shapes as affine functions of the size on residue classes (what sizes is built on)
"""
