"""A command on a pseudo-terminal, driven as a person would type at it (used by the pty-*.py drivers)."""
import os, pty, select, time


class PtySession:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvp(argv[0], argv)
        self.out = b""

    def read_until(self, pred, timeout):
        """Reads until pred() holds (checked first, against what earlier reads brought) or timeout."""
        end = time.time() + timeout
        while time.time() < end:
            if pred():
                return True
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    return False
                if not chunk:
                    return False
                self.out += chunk
        return pred()

    def write(self, data):
        os.write(self.fd, data)

    def end(self, timeout=30):
        """Ctrl-D, then the exit status (None if it had to be killed), reading output meanwhile."""
        os.write(self.fd, b"\x04")
        deadline = time.time() + timeout
        while time.time() < deadline:
            done, st = os.waitpid(self.pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(st)
            self.read_until(lambda: False, 0.1)
        os.kill(self.pid, 9)
        return None
