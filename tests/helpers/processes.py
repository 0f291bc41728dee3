"""Server subprocesses started by tests."""
import subprocess


def stop(proc: subprocess.Popen, log) -> None:
    """Terminate a server the test started, kill it if it ignores that, close its log."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
