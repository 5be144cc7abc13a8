import os
x = f"{f'{f"{1}"}'}"
import sys
t = f"""{
  x
}"""
