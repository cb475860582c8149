"""profile_session.py OUT SCRIPT [ARGS...]: run SCRIPT (bin/in.qpsmtpd) under cProfile, write the stats to OUT.

Started by bench/run.py with the session's socket on fd 0/1; nothing is
written to fd 1. The cProfile import itself is not part of the session's cost.
"""
import cProfile
import io
import pstats
import runpy
import sys


def main() -> None:
    out, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    prof = cProfile.Profile()
    prof.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        pass
    finally:
        prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    buf.write(f"cProfile of one session: {' '.join(sys.argv)}\n\nBy cumulative time:\n")
    st.sort_stats("cumulative").print_stats(45)
    buf.write("\nBy own (total) time:\n")
    st.sort_stats("tottime").print_stats(25)
    with open(out, "w") as fh:
        fh.write(buf.getvalue())


if __name__ == "__main__":
    main()
