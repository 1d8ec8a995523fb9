namespace CertPortal;

/// <summary>Rows to skip for a page. In int arithmetic a large page number wrapped to a negative offset, which PostgreSQL
/// refuses (OFFSET must not be negative: a 500) and SQLite read as 0 (the first page under the asked-for number); past the
/// last row it is now simply an empty page.</summary>
public static class Paging
{
    public static int Offset(int page, int pageSize) => (int)Math.Clamp(((long)Math.Max(page, 1) - 1) * pageSize, 0, int.MaxValue);
}
