"""Reference model servers: Whisper transcription and text embeddings over OpenAI-compatible HTTP.

``local.models.transcription`` and ``local.models.embeddings`` each have a
``create_app(settings)`` factory and run as programs
(``python -m local.models.transcription --port 9001``). Both load their model
in the background and answer 503 "is currently loading" meanwhile, as a
Hugging Face Space does; see ``local.models.settings`` for every knob.
"""
