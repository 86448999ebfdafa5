"""The model side: prompts, the engine or a model server, the worker, transcription, model files."""
