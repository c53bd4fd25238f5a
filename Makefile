# weft: a thin Makefile over CMake. The README's two commands:
#   make demo   build in Release and run the tour of the seed's demos
#   make test   build and run every test, normally and under ASan+UBSan
# Also: make test-tsan (the suite under ThreadSanitizer), make bench,
# make docs (regenerate the API reference), make install PREFIX=...,
# make clean. TOUR_ARGS=--quick shortens the tour's sleeps.

BUILD     ?= build
JOBS      ?= 2
WERROR    ?= OFF
PREFIX    ?= /usr/local
TOUR_ARGS ?=
CMAKE_FLAGS = -DWEFT_WERROR=$(WERROR)
CTEST     = ctest --output-on-failure -j$(JOBS)
# cmake --build runs make again; keep its "Entering directory" lines out of
# the tour's output.
MAKEFLAGS += --no-print-directory

.PHONY: all deps demo test test-debug test-asan test-tsan bench docs install clean

all: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	cmake --build $(BUILD)/release -j$(JOBS)

deps:
	@tools/ensure-deps

demo: deps
	cmake -S . -B $(BUILD)/release -DCMAKE_BUILD_TYPE=Release -DWEFT_BUILD_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD)/release -j$(JOBS) --target weft_tour
	$(BUILD)/release/examples/weft_tour $(TOUR_ARGS)

test: test-debug test-asan

test-debug: deps
	cmake -S . -B $(BUILD)/debug -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(BUILD)/debug -j$(JOBS)
	cd $(BUILD)/debug && $(CTEST)

test-asan: deps
	cmake -S . -B $(BUILD)/asan -DCMAKE_BUILD_TYPE=Debug -DWEFT_SANITIZE=address,undefined \
	  -DWEFT_TEST_TIMEOUT_SCALE=3 $(CMAKE_FLAGS)
	cmake --build $(BUILD)/asan -j$(JOBS)
	cd $(BUILD)/asan && $(CTEST)

test-tsan: deps
	cmake -S . -B $(BUILD)/tsan -DCMAKE_BUILD_TYPE=Debug -DWEFT_SANITIZE=thread \
	  -DWEFT_TEST_TIMEOUT_SCALE=5 $(CMAKE_FLAGS)
	cmake --build $(BUILD)/tsan -j$(JOBS)
	cd $(BUILD)/tsan && $(CTEST)

bench:
	bench/run

docs:
	/usr/bin/python3 tools/gen-api-docs

install: all
	cmake --install $(BUILD)/release --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
