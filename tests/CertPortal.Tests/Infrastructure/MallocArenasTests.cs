using System.Globalization;
using System.Net;
using CertPortal.Infrastructure;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A node bounds glibc's malloc arenas itself (MallocArenas), unless the operator set glibc's limit: started
/// as an operator starts it, with nothing in its environment about malloc, it runs on the main arena and at most one
/// other, however many of its threads allocate.</summary>
public sealed class MallocArenasTests
{
    [Fact]
    public async Task A_node_keeps_at_most_the_bound_of_arenas_unless_the_operator_set_the_limit()
    {
        await using var bounded = new CertPortalNode("bounded", new Dictionary<string, string>());
        await using var operatorSet = new CertPortalNode("operator-set", new Dictionary<string, string>()) { Environment = { [MallocArenas.Variable] = "64" } };
        bounded.Start();
        operatorSet.Start();
        await bounded.WaitReadyAsync();
        await operatorSet.WaitReadyAsync();
        await BusyAsync(bounded);
        await BusyAsync(operatorSet);

        Assert.InRange(ThreadArenas(bounded.ProcessId), 0, MallocArenas.Max - 1);
        // The same count sees an arena per allocating thread where the operator's limit allows them (and is kept).
        Assert.InRange(ThreadArenas(operatorSet.ProcessId), MallocArenas.Max, 64);
    }

    /// <summary>Requests from many connections at once, so that the node's thread pool allocates from several threads.</summary>
    private static async Task BusyAsync(CertPortalNode node)
    {
        using var client = node.Client();
        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => client.GetAsync("/crl/issuing.crl")));
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a.StatusCode));
    }

    /// <summary>glibc's arenas besides the main one, counted in the process's memory (glibc has no getter for its limit):
    /// each lives in heaps of 64 MiB (HEAP_MAX_SIZE) at 64 MiB-aligned addresses, and the first heap of an arena starts
    /// with glibc's heap_info whose ar_ptr points at the arena's state right behind it and whose prev is null.</summary>
    internal static int ThreadArenas(int pid)
    {
        const long heapSize = 64L << 20;
        using var memory = File.OpenHandle($"/proc/{pid}/mem");
        var header = new byte[16];
        var arenas = 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/maps"))
        {
            // start-end perms offset dev inode: five fields for an anonymous mapping (a named one has a path too)
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields is not [var range, "rw-p", _, _, "0"]) continue;
            var start = long.Parse(range.AsSpan(0, range.IndexOf('-', StringComparison.Ordinal)), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (start % heapSize != 0 || RandomAccess.Read(memory, header, start) != header.Length) continue;
            var arena = BitConverter.ToInt64(header, 0);
            var previous = BitConverter.ToInt64(header, 8);
            if (previous == 0 && arena > start && arena < start + heapSize) arenas++;
        }
        return arenas;
    }
}
