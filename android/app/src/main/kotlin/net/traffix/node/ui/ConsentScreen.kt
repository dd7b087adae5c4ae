package net.traffix.node.ui

import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.ui.Modifier
import androidx.compose.ui.platform.LocalContext
import androidx.compose.ui.res.stringResource
import net.traffix.core.onboarding.Consent
import net.traffix.node.R

/**
 * The prominent disclosure (core [Consent]): before this phone shares its connection for the
 * first time, what sharing means in plain words, on a screen of its own, with the operator's
 * terms from the pairing link (or the plain statement that the link named none). Nothing is
 * stored or started until the owner agrees.
 */
@Composable
internal fun ConsentScreen(server: String, termsUrl: String?, onAgree: () -> Unit, onDecline: () -> Unit) {
    val context = LocalContext.current
    ScreenColumn {
        Text(stringResource(R.string.consent_title), style = MaterialTheme.typography.headlineSmall)
        Text(stringResource(R.string.consent_what, server), style = MaterialTheme.typography.bodyLarge)
        Section(stringResource(R.string.consent_means_title)) {
            for (line in listOf(
                R.string.consent_means_traffic,
                R.string.consent_means_ip,
                R.string.consent_means_data,
                R.string.consent_means_battery,
                R.string.consent_means_limits,
                R.string.consent_means_stop,
            )) {
                Text("• " + stringResource(line), style = MaterialTheme.typography.bodyMedium)
            }
        }
        Section(stringResource(R.string.consent_terms_title)) {
            if (termsUrl != null) {
                Text(stringResource(R.string.consent_terms_read, server), style = MaterialTheme.typography.bodyMedium)
                TextButton(onClick = { openUrl(context, termsUrl) }) { Text(termsUrl) }
            } else {
                Text(stringResource(R.string.consent_terms_none, server), style = MaterialTheme.typography.bodyMedium)
            }
        }
        Button(onClick = onAgree, modifier = Modifier.fillMaxWidth()) { Text(stringResource(R.string.consent_agree)) }
        OutlinedButton(onClick = onDecline, modifier = Modifier.fillMaxWidth()) { Text(stringResource(R.string.consent_decline)) }
        Text(stringResource(R.string.consent_version, Consent.VERSION), style = MaterialTheme.typography.bodySmall)
    }
}
