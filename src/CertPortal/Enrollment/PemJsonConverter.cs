using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CertPortal.Enrollment;

/// <summary>Writes a PEM string of an enrollment's answer (the certificate, the CA chain) as the very JSON string System.Text.Json's
/// default encoder writes (PemJsonConverterTests compares the bytes): a line feed as <c>\n</c>, '+' as <c>\u002B</c>, the rest of
/// PEM's characters (base64, '-', ' ') as they are. The default encoder sends every line feed and '+' through its general escaping
/// loop, and each answer carries ~3 KB of PEM; here PEM's alphabet is checked and copied with vectorised span operations. A string
/// with any other character is written by the default encoder, as before.</summary>
public class PemJsonConverter : JsonConverter<string>
{
    private static readonly SearchValues<char> Alphabet =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=- \n");
    private static readonly SearchValues<char> Escaped = SearchValues.Create("\n+");

    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetString();

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options)
    {
        var length = JsonLength(value);
        if (length < 0)
        {
            writer.WriteStringValue(value);
            return;
        }
        byte[]? rented = null;
        var json = length <= 4096 ? stackalloc byte[length] : (rented = ArrayPool<byte>.Shared.Rent(length)).AsSpan(0, length);
        Encode(value, json);
        writer.WriteRawValue(json, skipInputValidation: true);
        if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
    }

    /// <summary>The JSON string's length in bytes, quotes included; -1 when <paramref name="pem"/> has a character outside PEM's.</summary>
    private static int JsonLength(ReadOnlySpan<char> pem) =>
        pem.ContainsAnyExcept(Alphabet) ? -1 : 2 + pem.Length + pem.Count('\n') + 5 * pem.Count('+');

    private static void Encode(ReadOnlySpan<char> pem, Span<byte> json)
    {
        json[0] = (byte)'"';
        var at = 1;
        while (!pem.IsEmpty)
        {
            var next = pem.IndexOfAny(Escaped);
            var plain = next < 0 ? pem : pem[..next];
            Ascii.FromUtf16(plain, json[at..], out var written);
            at += written;
            if (next < 0) break;
            var escape = pem[next] == '\n' ? "\\n"u8 : "\\u002B"u8;
            escape.CopyTo(json[at..]);
            at += escape.Length;
            pem = pem[(next + 1)..];
        }
        json[at] = (byte)'"';
    }

    /// <summary>For the CA chain, the same string in every answer (<see cref="Authority.CaHierarchy.ChainPem"/>): its JSON is made
    /// once and kept for as long as the same string is written.</summary>
    public sealed class Kept : PemJsonConverter
    {
        private static volatile KeptJson? _kept;

        private sealed record KeptJson(string Pem, byte[] Json);

        public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options)
        {
            var kept = _kept;
            if (kept is null || !ReferenceEquals(kept.Pem, value))
            {
                var length = JsonLength(value);
                if (length < 0)
                {
                    writer.WriteStringValue(value);
                    return;
                }
                var json = new byte[length];
                Encode(value, json);
                _kept = kept = new KeptJson(value, json);
            }
            writer.WriteRawValue(kept.Json, skipInputValidation: true);
        }
    }
}
