using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CertPortal.Data;

/// <summary>Makes SQLite write a commit's WAL frames to the file in one system call instead of two per page. SQLite writes
/// each frame as its 24-byte header and then its page, each with its own <c>pwrite</c>: a group commit of the group writer
/// (~20 pages for four enrollments) made ~40 calls, each a kernel entry, which on this project's VM (page-table isolation
/// without PCID) costs far more than the copy: 40 writes of a 20-frame commit took ~79 µs of CPU, one write of the same bytes
/// ~10 µs (docs/benchmark-history.md, session 25). The writes happen inside the group writer's turn, the serial part of
/// every enrollment on SQLite.
/// <para>This is a VFS shim registered as SQLite's default: it opens every file with the built-in <c>unix</c> VFS and only
/// wraps write-ahead-log files, whose appended writes it gathers in memory. What SQLite relies on stays true: everything
/// gathered reaches the file (one write) before SQLite syncs it (with <c>synchronous=FULL</c>, which
/// <see cref="SqliteDurability"/> sets on every connection, part of every commit and before the commit is published to
/// readers), as soon as a commit's last frame (its header names the database's size) is written (so a commit is in the file
/// when it returns under any setting), and before anything that reads, sizes, truncates, controls or closes the file. What is
/// on disk at a sync is what the separate writes would have left; a crash before it loses only frames SQLite never counted as
/// committed, as before. The database file, its shared-memory index and every other file are SQLite's own, untouched.</para></summary>
internal static unsafe partial class SqliteWalWrites
{
    private const int SqliteOk = 0;
    private const int SqliteNoMem = 7;
    private const int SqliteOpenWal = 0x00080000;
    private const int FrameHeaderSize = 24;
    /// <summary>The most the unix VFS writes in one call (its <c>seekAndWriteFd</c> masks a length with 0x1ffff): a commit
    /// larger than this (a big CRL) is written that much at a time.</summary>
    private const int MaxBuffer = 0x1ffff;

    // sqlite3_vfs (version 3) on a 64-bit platform: three ints, then pointers.
    private const int VfsSizeOfOsFile = 4;
    private const int VfsNext = 16;
    private const int VfsName = 24;
    private const int VfsOpen = 40;
    private const int VfsStructSize = 168;

    // sqlite3_io_methods: an int (padded), then the methods in this order (version 3).
    private const int MClose = 0, MRead = 1, MWrite = 2, MTruncate = 3, MSync = 4, MFileSize = 5, MLock = 6, MUnlock = 7,
        MCheckReservedLock = 8, MFileControl = 9, MSectorSize = 10, MDeviceCharacteristics = 11, MShmMap = 12, MShmLock = 13,
        MShmBarrier = 14, MShmUnmap = 15, MFetch = 16, MUnfetch = 17, MethodCount = 18;

    /// <summary>Our part of a WAL file's sqlite3_file; the unix VFS's own file follows it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct WalFile
    {
        /// <summary>sqlite3_file.pMethods: the shim's methods.</summary>
        public nint Methods;
        public byte* Buffer;
        /// <summary>The file offset of Buffer[0].</summary>
        public long Start;
        public int Length;
        /// <summary>The last write was the header of a commit frame: the commit ends with the page that follows it.</summary>
        public int CommitFrame;
    }

    private static readonly int Header = sizeof(WalFile);
    private static readonly Lock Gate = new();
    private static nint _unix, _unixOpen, _methods;
    // Per thread, so a test can count its own connection's writes while others run (SQLite calls the VFS on the caller's thread).
    [ThreadStatic] private static long _writes;
    [ThreadStatic] private static long _fileWrites;

    /// <summary>Whether the shim is SQLite's default VFS in this process.</summary>
    public static bool Installed { get; private set; }

    /// <summary>WAL writes SQLite made through the shim on this thread, and the writes the shim made to the files for them.</summary>
    public static (long Writes, long FileWrites) CountsOnThisThread => (_writes, _fileWrites);

    /// <summary>Registers the shim as SQLite's default VFS, once per process, before the first connection opens. Only on
    /// 64-bit Linux, whose structure layouts the shim knows; elsewhere SQLite keeps its own writes.</summary>
    public static void Install()
    {
        lock (Gate)
        {
            if (Installed || !OperatingSystem.IsLinux() || IntPtr.Size != 8) return;
            nint unix;
            try
            {
                unix = FindVfs("unix");
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // Microsoft.Data.Sqlite set up with another SQLite than its bundled e_sqlite3: that one keeps its own writes.
                return;
            }
            if (unix == 0 || *(int*)unix < 3) return;
            _unix = unix;
            _unixOpen = *(nint*)(unix + VfsOpen);

            var methods = (nint*)NativeMemory.AllocZeroed((nuint)(8 + MethodCount * 8));
            *(int*)methods = 3;
            var m = methods + 1;
            m[MClose] = (nint)(delegate* unmanaged[Cdecl]<nint, int>)&XClose;
            m[MRead] = (nint)(delegate* unmanaged[Cdecl]<nint, nint, int, long, int>)&XRead;
            m[MWrite] = (nint)(delegate* unmanaged[Cdecl]<nint, byte*, int, long, int>)&XWrite;
            m[MTruncate] = (nint)(delegate* unmanaged[Cdecl]<nint, long, int>)&XTruncate;
            m[MSync] = (nint)(delegate* unmanaged[Cdecl]<nint, int, int>)&XSync;
            m[MFileSize] = (nint)(delegate* unmanaged[Cdecl]<nint, long*, int>)&XFileSize;
            m[MLock] = (nint)(delegate* unmanaged[Cdecl]<nint, int, int>)&XLock;
            m[MUnlock] = (nint)(delegate* unmanaged[Cdecl]<nint, int, int>)&XUnlock;
            m[MCheckReservedLock] = (nint)(delegate* unmanaged[Cdecl]<nint, int*, int>)&XCheckReservedLock;
            m[MFileControl] = (nint)(delegate* unmanaged[Cdecl]<nint, int, nint, int>)&XFileControl;
            m[MSectorSize] = (nint)(delegate* unmanaged[Cdecl]<nint, int>)&XSectorSize;
            m[MDeviceCharacteristics] = (nint)(delegate* unmanaged[Cdecl]<nint, int>)&XDeviceCharacteristics;
            m[MShmMap] = (nint)(delegate* unmanaged[Cdecl]<nint, int, int, int, nint, int>)&XShmMap;
            m[MShmLock] = (nint)(delegate* unmanaged[Cdecl]<nint, int, int, int, int>)&XShmLock;
            m[MShmBarrier] = (nint)(delegate* unmanaged[Cdecl]<nint, void>)&XShmBarrier;
            m[MShmUnmap] = (nint)(delegate* unmanaged[Cdecl]<nint, int, int>)&XShmUnmap;
            m[MFetch] = (nint)(delegate* unmanaged[Cdecl]<nint, long, int, nint, int>)&XFetch;
            m[MUnfetch] = (nint)(delegate* unmanaged[Cdecl]<nint, long, nint, int>)&XUnfetch;
            _methods = (nint)methods;

            // The unix VFS's own entry points for everything but opening a file; a larger file object to hold ours first.
            var vfs = (byte*)NativeMemory.AllocZeroed(VfsStructSize);
            Buffer.MemoryCopy((void*)unix, vfs, VfsStructSize, VfsStructSize);
            *(int*)(vfs + VfsSizeOfOsFile) = *(int*)(unix + VfsSizeOfOsFile) + Header;
            *(nint*)(vfs + VfsNext) = 0;
            *(nint*)(vfs + VfsName) = (nint)Utf8Z("certportal-unix");
            *(nint*)(vfs + VfsOpen) = (nint)(delegate* unmanaged[Cdecl]<nint, nint, nint, int, int*, int>)&XOpen;
            var rc = RegisterVfs((nint)vfs, 1);
            if (rc != SqliteOk) throw new InvalidOperationException($"SQLite refused the WAL write shim (sqlite3_vfs_register: {rc}).");
            Installed = true;
        }
    }

    [LibraryImport("e_sqlite3", EntryPoint = "sqlite3_vfs_find", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint FindVfs(string name);

    [LibraryImport("e_sqlite3", EntryPoint = "sqlite3_vfs_register")]
    private static partial int RegisterVfs(nint vfs, int makeDefault);

    private static byte* Utf8Z(string s)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(s);
        var p = (byte*)NativeMemory.AllocZeroed((nuint)bytes.Length + 1);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        return p;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XOpen(nint vfs, nint name, nint file, int flags, int* outFlags)
    {
        var open = (delegate* unmanaged[Cdecl]<nint, nint, nint, int, int*, int>)_unixOpen;
        // Every other file is the unix VFS's, in the same (larger) object.
        if ((flags & SqliteOpenWal) == 0) return open(_unix, name, file, flags, outFlags);
        var wal = (WalFile*)file;
        *wal = default;
        var rc = open(_unix, name, file + Header, flags, outFlags);
        if (rc != SqliteOk || *(nint*)Inner(file) == 0) return rc;
        if (*(int*)*(nint*)Inner(file) >= 3)
        {
            wal->Methods = _methods;
            return rc;
        }
        // A unix file with fewer methods than the shim forwards (not the posix locking Linux uses): left as SQLite opens it.
        ((delegate* unmanaged[Cdecl]<nint, int>)Method(file, MClose))(Inner(file));
        return open(_unix, name, file, flags, outFlags);
    }

    private static nint Inner(nint file) => file + Header;

    /// <summary>The unix file's method number <paramref name="index"/>.</summary>
    private static nint Method(nint file, int index) => *(nint*)(*(nint*)Inner(file) + 8 + index * 8);

    private static int Flush(WalFile* wal, nint file)
    {
        if (wal->Length == 0) return SqliteOk;
        var length = wal->Length;
        wal->Length = 0;
        _fileWrites++;
        return ((delegate* unmanaged[Cdecl]<nint, byte*, int, long, int>)Method(file, MWrite))(Inner(file), wal->Buffer, length, wal->Start);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XWrite(nint file, byte* data, int amount, long offset)
    {
        var wal = (WalFile*)file;
        _writes++;
        if (wal->Length > 0 && (offset != wal->Start + wal->Length || wal->Length + amount > MaxBuffer))
        {
            var rc = Flush(wal, file);
            if (rc != SqliteOk) return rc;
        }
        if (amount > MaxBuffer)
        {
            _fileWrites++;
            return ((delegate* unmanaged[Cdecl]<nint, byte*, int, long, int>)Method(file, MWrite))(Inner(file), data, amount, offset);
        }
        if (wal->Buffer is null)
        {
            // Only a connection that writes gets a buffer; readers' WAL files never do. The flush above keeps what it holds within it.
            // No exception may leave a function SQLite calls: NativeMemory throws where malloc would return null.
            try
            {
                wal->Buffer = (byte*)NativeMemory.Alloc(MaxBuffer);
            }
            catch (OutOfMemoryException)
            {
                return SqliteNoMem;
            }
        }
        if (wal->Length == 0) wal->Start = offset;
        Buffer.MemoryCopy(data, wal->Buffer + wal->Length, amount, amount);
        wal->Length += amount;
        // A frame header's bytes 4-7 are the database's size in pages after a commit, zero in the other frames (the WAL
        // format, sqlite.org/fileformat2.html#walformat): the page after a commit frame's header ends the commit.
        if (amount == FrameHeaderSize)
        {
            wal->CommitFrame = (data[4] | data[5] | data[6] | data[7]) != 0 ? 1 : 0;
            return SqliteOk;
        }
        if (wal->CommitFrame == 0) return SqliteOk;
        wal->CommitFrame = 0;
        return Flush(wal, file);
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XClose(nint file)
    {
        var wal = (WalFile*)file;
        var flushed = Flush(wal, file);
        NativeMemory.Free(wal->Buffer);
        wal->Buffer = null;
        var rc = ((delegate* unmanaged[Cdecl]<nint, int>)Method(file, MClose))(Inner(file));
        return flushed != SqliteOk ? flushed : rc;
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XRead(nint file, nint data, int amount, long offset) =>
        Flush((WalFile*)file, file) is var rc and not SqliteOk ? rc
            : ((delegate* unmanaged[Cdecl]<nint, nint, int, long, int>)Method(file, MRead))(Inner(file), data, amount, offset);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XTruncate(nint file, long size) =>
        Flush((WalFile*)file, file) is var rc and not SqliteOk ? rc
            : ((delegate* unmanaged[Cdecl]<nint, long, int>)Method(file, MTruncate))(Inner(file), size);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XSync(nint file, int flags) =>
        Flush((WalFile*)file, file) is var rc and not SqliteOk ? rc
            : ((delegate* unmanaged[Cdecl]<nint, int, int>)Method(file, MSync))(Inner(file), flags);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XFileSize(nint file, long* size) =>
        Flush((WalFile*)file, file) is var rc and not SqliteOk ? rc
            : ((delegate* unmanaged[Cdecl]<nint, long*, int>)Method(file, MFileSize))(Inner(file), size);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XFileControl(nint file, int op, nint arg) =>
        Flush((WalFile*)file, file) is var rc and not SqliteOk ? rc
            : ((delegate* unmanaged[Cdecl]<nint, int, nint, int>)Method(file, MFileControl))(Inner(file), op, arg);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XFetch(nint file, long offset, int amount, nint pointer) =>
        Flush((WalFile*)file, file) is var rc and not SqliteOk ? rc
            : ((delegate* unmanaged[Cdecl]<nint, long, int, nint, int>)Method(file, MFetch))(Inner(file), offset, amount, pointer);

    // The rest do not read or write the file's content: straight to the unix file.
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XLock(nint file, int level) => ((delegate* unmanaged[Cdecl]<nint, int, int>)Method(file, MLock))(Inner(file), level);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XUnlock(nint file, int level) => ((delegate* unmanaged[Cdecl]<nint, int, int>)Method(file, MUnlock))(Inner(file), level);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XCheckReservedLock(nint file, int* result) =>
        ((delegate* unmanaged[Cdecl]<nint, int*, int>)Method(file, MCheckReservedLock))(Inner(file), result);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XSectorSize(nint file) => ((delegate* unmanaged[Cdecl]<nint, int>)Method(file, MSectorSize))(Inner(file));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XDeviceCharacteristics(nint file) =>
        ((delegate* unmanaged[Cdecl]<nint, int>)Method(file, MDeviceCharacteristics))(Inner(file));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XShmMap(nint file, int page, int pageSize, int extend, nint pointer) =>
        ((delegate* unmanaged[Cdecl]<nint, int, int, int, nint, int>)Method(file, MShmMap))(Inner(file), page, pageSize, extend, pointer);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XShmLock(nint file, int offset, int count, int flags) =>
        ((delegate* unmanaged[Cdecl]<nint, int, int, int, int>)Method(file, MShmLock))(Inner(file), offset, count, flags);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void XShmBarrier(nint file) => ((delegate* unmanaged[Cdecl]<nint, void>)Method(file, MShmBarrier))(Inner(file));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XShmUnmap(nint file, int delete) => ((delegate* unmanaged[Cdecl]<nint, int, int>)Method(file, MShmUnmap))(Inner(file), delete);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XUnfetch(nint file, long offset, nint pointer) =>
        ((delegate* unmanaged[Cdecl]<nint, long, nint, int>)Method(file, MUnfetch))(Inner(file), offset, pointer);
}
