#!/usr/bin/env python3
"""The committed files of the bad-input catalogue (cases.lua), each a few
hundred bytes. /usr/bin/python3 tests/bad_inputs/make_files.py
- evil_zip.pth, evil_legacy.pth: PyTorch checkpoints (zip and legacy) whose
  pickle calls os.system('touch PWNED'); fmd must refuse the global, and
  the file PWNED must never appear.
"""
import io, os, pickle, struct, zipfile

here = os.path.dirname(os.path.abspath(__file__))

class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))

payload = pickle.dumps({"state_dict": {"w": Evil()}}, protocol=2)

b = io.BytesIO()
with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", payload)
    z.writestr("archive/version", "3\n")
open(os.path.join(here, "evil_zip.pth"), "wb").write(b.getvalue())

b = io.BytesIO()
pickle.dump(0x1950a86a20f9469cfc6c, b, protocol=2)       # torch's legacy magic number
pickle.dump(1001, b, protocol=2)                          # protocol version
pickle.dump({"protocol_version": 1001, "little_endian": True,
             "type_sizes": {"short": 2, "int": 4, "long": 4}}, b, protocol=2)
b.write(payload)
open(os.path.join(here, "evil_legacy.pth"), "wb").write(b.getvalue())
