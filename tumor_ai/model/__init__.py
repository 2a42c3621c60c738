"""The contract: what a model folder is and says (metadata, folders and sources, the architecture registry, labels).

Nothing here imports TensorFlow when it is imported, trains or draws; every other wing reads models through it.
"""
