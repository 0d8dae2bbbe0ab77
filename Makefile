# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test test-sqlite test-postgres install install-test upgrade browser bench i18n clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The versions in constraints.txt, the ones the tests passed with.
install: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]' -e plugins/examples/topup-spei
	npm ci --silent --no-audit --no-fund --prefix tests/oidc  # the OpenID provider the tests sign in at
	npm ci --silent --no-audit --no-fund --prefix tests/e2e  # axe-core and the Nu HTML Checker (vnu.jar)

# The newest releases within pyproject.toml's ranges, written to constraints.txt.
upgrade: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade --upgrade-strategy eager -e '.[test]' -e plugins/examples/topup-spei
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

run: install
	$(BIN)/topup init --demo
	$(BIN)/topup serve --host $(HOST) --port $(PORT)

test: install-test browser test-sqlite test-postgres

# Browser tests drive Debian's Chromium (Playwright never downloads a browser); the HTML
# checker (vnu.jar) needs Java.
browser:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }
	@command -v java >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq default-jre-headless; }

test-sqlite:
	$(BIN)/pytest

test-postgres:
	TOPUP_TEST_DATABASE_URL=$(PG_URL) $(BIN)/pytest

# Numbers, not tests: wrk on loopback (apt-get install -y wrk).
bench: install
	$(BIN)/python bench/calls
	$(BIN)/python bench/throughput

# After changing buyer-facing text: extract, merge into every catalogue, compile (docs/translating.md).
i18n: install
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -c TRANSLATORS: --project=topup -o topup/translations/messages.pot .
	$(BIN)/pybabel update -i topup/translations/messages.pot -d topup/translations
	$(BIN)/pybabel compile -d topup/translations

clean:
	rm -rf $(VENV) *.egg-info
