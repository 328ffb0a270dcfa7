"""The lecture-search evaluation set: six spoken lectures, 73 half-remembered questions, each with its moment.

The text lives here (``lectures/<slug>.txt``, one sentence a line; ``questions.json``); the audio, its
sentence timings and the Whisper transcripts are built from it on demand by :mod:`bench.search_eval.corpus`
into ``bench/.cache/search_eval/`` (git-ignored). See ``README.md`` in this folder.
"""
