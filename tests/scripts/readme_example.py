"""The README's C example must be examples/readme.c, verbatim, so that the
example readers copy is the one CI compiles and runs."""
import sys

readme, example = sys.argv[1], sys.argv[2]
text = open(readme, encoding="utf-8").read()
code = open(example, encoding="utf-8").read()
if "```c\n" + code + "```" not in text:
    sys.exit("README.md's ```c example differs from examples/readme.c")
