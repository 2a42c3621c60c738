"""The faces: the page (serve, ui, handlers), the chat and the agents' tools, the predict command, the workspace.

They show what the reader service (``tumor_ai.app.reader``) and ``tumor_ai.core`` compute, in ``tumor_ai.core.wording``'s words.
"""
