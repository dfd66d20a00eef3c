"""Whether another process runs, without signalling it (standard library only, no bpy)."""

from __future__ import annotations

import os
import sys


def alive(pid: int) -> bool:
    """Whether another process ``pid`` runs (never signals it: on Windows os.kill ends it)."""
    if pid <= 0 or pid == os.getpid() or pid > 2**31 - 1:
        return False
    if sys.platform == "win32":
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
        kernel32.WaitForSingleObject.argtypes = (wintypes.HANDLE, wintypes.DWORD)
        kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
        synchronize, query = 0x00100000, 0x1000  # SYNCHRONIZE, PROCESS_QUERY_LIMITED_INFORMATION
        handle = kernel32.OpenProcess(synchronize | query, False, pid)
        if not handle:
            return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists
        try:
            return kernel32.WaitForSingleObject(handle, 0) == 0x102  # WAIT_TIMEOUT: running
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
