"""The reference classify is compared against: Python LiteRT (the PyPI wheel
ai-edge-litert, the same 2.1.4 as the Rust backend's library), one thread,
and Pillow. Run from .cache/litert-py (scripts/litert.sh makes it).

  invoke MODEL INPUT OUTPUT       raw input tensor bytes -> raw output tensor bytes
  resize W H IN_W IN_H RGB OUT    raw RGB8 -> Pillow's bilinear resize (antialiased), raw RGB8
  photos MODEL PHOTO...           per photo, Pillow decode + bilinear resize + invoke: JSON lines
                                  {"photo", "index", "score"} of the best class
  bench MODEL ITERATIONS PHOTO... per photo, median ms of end to end (decode + resize + invoke)
                                  and invoke alone: JSON lines {"photo", "end_to_end_ms", "invoke_ms"}
"""

import json
import sys
import time

import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter


def interpreter(model):
    it = Interpreter(model_path=model, num_threads=1)
    it.allocate_tensors()
    return it


def invoke(it, tensor):
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    it.set_tensor(inp["index"], tensor.reshape(inp["shape"]).astype(inp["dtype"], copy=False))
    it.invoke()
    return it.get_tensor(out["index"])


def model_input(it, photo):
    _, h, w, _ = it.get_input_details()[0]["shape"]
    with Image.open(photo) as img:
        return np.asarray(img.convert("RGB").resize((int(w), int(h)), Image.BILINEAR), dtype=np.uint8)


def median_ms(samples):
    samples = sorted(samples)
    return samples[len(samples) // 2] * 1e3


def main(argv):
    command = argv[1]
    if command == "invoke":
        model, input_path, output_path = argv[2:5]
        it = interpreter(model)
        tensor = np.fromfile(input_path, dtype=np.uint8)
        with open(output_path, "wb") as f:
            f.write(invoke(it, tensor).tobytes())
    elif command == "resize":
        w, h, in_w, in_h = map(int, argv[2:6])
        with open(argv[6], "rb") as f:
            img = Image.frombytes("RGB", (in_w, in_h), f.read())
        with open(argv[7], "wb") as f:
            f.write(img.resize((w, h), Image.BILINEAR).tobytes())
    elif command == "photos":
        it = interpreter(argv[2])
        for photo in argv[3:]:
            scores = invoke(it, model_input(it, photo)).reshape(-1)
            best = int(np.argmax(scores))
            print(json.dumps({"photo": photo, "index": best, "score": int(scores[best])}))
    elif command == "bench":
        it = interpreter(argv[2])
        iterations = int(argv[3])
        for photo in argv[4:]:
            tensor = model_input(it, photo)
            invoke(it, tensor)
            whole, alone = [], []
            for _ in range(iterations):
                started = time.perf_counter()
                invoke(it, model_input(it, photo))
                whole.append(time.perf_counter() - started)
            for _ in range(iterations):
                started = time.perf_counter()
                it.invoke()
                alone.append(time.perf_counter() - started)
            print(json.dumps({"photo": photo, "end_to_end_ms": median_ms(whole), "invoke_ms": median_ms(alone)}))
    else:
        sys.exit(f"unknown command {command!r}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
