import os
s = """never closed
import fake
