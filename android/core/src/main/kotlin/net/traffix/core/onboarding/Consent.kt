package net.traffix.core.onboarding

import java.net.URI
import java.net.URISyntaxException
import java.net.URLDecoder

/**
 * The prominent disclosure an owner accepts before the node first shares their connection
 * (Google Play's rule for proxy apps, and plain honesty): what sharing means, shown in full on
 * its own screen, with the operator's terms. Accepting records [VERSION]; a new version of the
 * text asks again.
 *
 * The operator's terms come from the pairing link the owner scanned: an optional
 * `terms=https://…` parameter beside server, pin and code (the server's operator sets it;
 * `PairLink` ignores it). Only an https address is shown as a link; without one the screen
 * says the operator published none and names the server, so the owner can ask before sharing.
 */
object Consent {
    /** The version of the disclosure text; raise it when its meaning changes. */
    const val VERSION = 1

    /** Whether the owner must (again) accept before sharing. */
    fun needed(acceptedVersion: Int?): Boolean = acceptedVersion == null || acceptedVersion < VERSION

    /** The operator's terms from a pairing link: an https URL with a host, or null. */
    fun termsUrl(link: String): String? {
        val query = link.trim().substringAfter('?', "")
        for (pair in query.split('&')) {
            if (!pair.startsWith("terms=")) continue
            val value =
                try {
                    URLDecoder.decode(pair.substring("terms=".length), "UTF-8")
                } catch (e: IllegalArgumentException) {
                    return null
                }
            val uri =
                try {
                    URI(value)
                } catch (e: URISyntaxException) {
                    return null
                }
            if (!uri.scheme.equals("https", ignoreCase = true) || uri.host.isNullOrEmpty() || uri.userInfo != null) return null
            if (value.length > MAX_TERMS_URL || value.any { it.code < 0x21 || it.code > 0x7e }) return null
            return value
        }
        return null
    }

    const val MAX_TERMS_URL = 512
}
