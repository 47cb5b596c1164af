"""The one face-preprocessing module, shared by training and serving.

`faces.image` decodes bytes into RGB arrays (with a decompression-bomb guard), `faces.detect`
finds faces (YuNet, or a Haar cascade when no YuNet weights exist), `faces.align` warps a face to
the canonical five-point template, and `faces.preprocess` ties them together behind one config.
Only numpy, OpenCV, Pillow, tqdm and the standard library are imported here.
"""
