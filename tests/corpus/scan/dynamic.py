import importlib
m = importlib.import_module("x.y")
__import__("z")
