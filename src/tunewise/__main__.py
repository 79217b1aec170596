"""``python -m tunewise`` and the ``tunewise`` command: the signal handlers go in before any heavy import,
so Ctrl-C or SIGTERM while torch and transformers load ends the command cleanly (exit 130 / 143)."""

from __future__ import annotations


def run() -> None:
    from tunewise import interrupt

    interrupt.install()
    try:
        interrupt.stage("start")
        from tunewise.cli import main
    except KeyboardInterrupt:
        interrupt.hard_exit("stopped while starting")
    main()


if __name__ == "__main__":
    run()
