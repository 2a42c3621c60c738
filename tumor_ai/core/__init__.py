"""Reading pictures, running a model, maps, prediction sets, the not-an-MRI check, and the words for them.

Imports only ``tumor_ai.model`` below it, and never gradio: the app and the command lines sit on top.
"""
